"""Offline classifier: accuracy, calibration and speed (`python -m bench offline_classifier`).

On the labelled set in integrations/offline_data (written by hand, see its README), prints per
head (category, sentiment, intent) accuracy and macro-F1 against the majority-class baseline,
on a stratified 25 % held-out part (seed 0) and pooled over a stratified 5-fold
cross-validation; then what the default confidence threshold does (escalation rate, accuracy
of what is not escalated), how the shipped calibration compares with the alternatives, the
training time and the classify throughput.

The set is small and written by one author, so these figures are an upper bound for real
mail: a held-out message still shares its author's habits with the training part.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.svm import LinearSVC

from domain.classification import DEFAULT_CONFIDENCE_THRESHOLD, Category, Intent, Sentiment
from integrations.offline_classifier import (
    LABELLED_SET,
    LabelledExample,
    OfflineClassifier,
    OfflineModel,
    Reading,
    TemperatureScaledSVM,
    dataset_version,
    decide,
    load_offline_model,
    make_features,
    model_text,
    read_labelled_examples,
)

FIELDS = ("category", "sentiment", "intent")
SEED = 0


def reading_label(reading: Reading, field: str) -> str:
    """Return the raw (unthresholded) label a reading gives one head."""
    return str(getattr(reading, field).value)


def majority_baseline(train: Sequence[LabelledExample], field: str) -> str:
    """Return the most frequent label of the training part (ties: the first in order)."""
    return Counter(example.label(field) for example in train).most_common(1)[0][0]


def scores(truth: Sequence[str], predicted: Sequence[str]) -> tuple[float, float]:
    """Accuracy and macro-F1 (over the labels present in truth or prediction)."""
    return (
        float(accuracy_score(truth, predicted)),
        float(f1_score(truth, predicted, average="macro", zero_division=0)),
    )


def print_field_table(
    title: str,
    test: Sequence[LabelledExample],
    readings: Sequence[Reading],
    baselines: dict[str, str],
) -> None:
    """Print accuracy and macro-F1 per head beside the majority-class baseline."""
    print(f"{title} ({len(test)} messages)")
    print(
        f"  {'field':10} {'accuracy':>9} {'macro-F1':>9}   {'baseline acc':>12} {'F1':>6}  (baseline)"
    )
    for field in FIELDS:
        truth = [example.label(field) for example in test]
        accuracy, macro_f1 = scores(truth, [reading_label(r, field) for r in readings])
        base_accuracy, base_f1 = scores(truth, [baselines[field]] * len(truth))
        print(
            f"  {field:10} {accuracy:9.3f} {macro_f1:9.3f}   {base_accuracy:12.3f} {base_f1:6.3f}"
            f"  (always {baselines[field]})"
        )


def print_threshold_effect(
    test: Sequence[LabelledExample], readings: Sequence[Reading], *, threshold: float
) -> None:
    """Print what the confidence threshold escalates and how right the rest is."""
    decided = [decide(reading, threshold=threshold, version="bench") for reading in readings]
    escalated = [
        result.category is Category.ESCALATE and example.category is not Category.ESCALATE
        for example, result in zip(test, decided, strict=True)
    ]
    kept = [
        (example, result)
        for example, result, was_escalated in zip(test, decided, escalated, strict=True)
        if not was_escalated
    ]
    print(
        f"  at threshold {threshold:.2f}: {sum(escalated) / len(test):.1%} escalated "
        f"(not labelled ESCALATE); on the {len(kept)} others:"
    )
    category_right = sum(result.category is example.category for example, result in kept)
    print(f"    category accuracy {category_right / max(1, len(kept)):.3f}")
    sentiment_unsure = sum(
        result.sentiment is Sentiment.NEUTRAL and reading.sentiment is not Sentiment.NEUTRAL
        for reading, result in zip(readings, decided, strict=True)
        if result.category is not Category.ESCALATE
    )
    sentiment_right = sum(result.sentiment is example.sentiment for example, result in kept)
    intent_unsure = sum(
        result.intent is Intent.NONE and reading.intent is not Intent.NONE
        for reading, result in zip(readings, decided, strict=True)
        if result.category is not Category.ESCALATE
    )
    intent_right = sum(result.intent is example.intent for example, result in kept)
    print(
        f"    sentiment accuracy {sentiment_right / max(1, len(kept)):.3f} "
        f"({sentiment_unsure} unsure, said neutral)"
    )
    print(
        f"    intent accuracy {intent_right / max(1, len(kept)):.3f} "
        f"({intent_unsure} unsure, said none: wrong wherever the label is another intent)"
    )


def print_sentiment_score(test: Sequence[LabelledExample], readings: Sequence[Reading]) -> None:
    """Compare the model's sentiment score with the hand-written one."""
    written = np.array([example.sentiment_score for example in test])
    measured = np.array([reading.sentiment_score for reading in readings])
    correlation = float(np.corrcoef(written, measured)[0, 1])
    mean_error = float(np.mean(np.abs(written - measured)))
    print(
        f"  sentiment score vs written: mean |error| {mean_error:.3f}, correlation {correlation:.3f}"
    )


def held_out(examples: Sequence[LabelledExample]) -> None:
    """Train on 75 % (stratified by category, seed 0) and measure the other 25 %."""
    train, test = train_test_split(
        list(examples),
        test_size=0.25,
        random_state=SEED,
        stratify=[example.category.value for example in examples],
    )
    model = OfflineModel(train, version="held-out")
    readings = model.read_many([(example.subject, example.body) for example in test])
    baselines = {field: majority_baseline(train, field) for field in FIELDS}
    print_field_table("held-out 25 %", test, readings, baselines)
    print_threshold_effect(test, readings, threshold=DEFAULT_CONFIDENCE_THRESHOLD)
    print_sentiment_score(test, readings)


def cross_validated(examples: Sequence[LabelledExample]) -> None:
    """Pool the predictions of a stratified 5-fold cross-validation over the whole set."""
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    readings: list[Reading | None] = [None] * len(examples)
    fold_accuracy: dict[str, list[float]] = {field: [] for field in FIELDS}
    baseline_votes: dict[str, Counter[str]] = {field: Counter() for field in FIELDS}
    for train_index, test_index in folds.split(
        examples, [example.category.value for example in examples]
    ):
        train = [examples[i] for i in train_index]
        test = [examples[i] for i in test_index]
        model = OfflineModel(train, version="cv")
        fold_readings = model.read_many([(example.subject, example.body) for example in test])
        for i, reading in zip(test_index, fold_readings, strict=True):
            readings[i] = reading
        for field in FIELDS:
            truth = [example.label(field) for example in test]
            predicted = [reading_label(reading, field) for reading in fold_readings]
            fold_accuracy[field].append(float(accuracy_score(truth, predicted)))
            baseline_votes[field][majority_baseline(train, field)] += 1
    pooled = [reading for reading in readings if reading is not None]
    baselines = {field: baseline_votes[field].most_common(1)[0][0] for field in FIELDS}
    print_field_table("5-fold cross-validation, pooled", examples, pooled, baselines)
    for field in FIELDS:
        values = fold_accuracy[field]
        print(
            f"  {field} accuracy per fold: "
            + " ".join(f"{value:.3f}" for value in values)
            + f" (sd {np.std(values):.3f})"
        )
    print_threshold_effect(examples, pooled, threshold=DEFAULT_CONFIDENCE_THRESHOLD)
    print_sentiment_score(examples, pooled)
    by_language: dict[str, list[bool]] = {}
    for example, reading in zip(examples, pooled, strict=True):
        by_language.setdefault(example.language, []).append(
            reading.category is example.category and reading.intent is example.intent
        )
    print(
        "  category and intent both right, by language: "
        + ", ".join(
            f"{language} {sum(right) / len(right):.3f} (n={len(right)})"
            for language, right in sorted(by_language.items())
        )
    )


def expected_calibration_error(
    probabilities: np.ndarray, truth: np.ndarray, classes: np.ndarray
) -> float:
    """Gap between confidence and accuracy, over 10 equal-width confidence bins."""
    confidence = probabilities.max(axis=1)
    correct = classes[probabilities.argmax(axis=1)] == truth
    error = 0.0
    for low, high in zip(np.linspace(0, 1, 11)[:-1], np.linspace(0, 1, 11)[1:], strict=True):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


def compare_calibration(examples: Sequence[LabelledExample]) -> None:
    """Compare the shipped category head with LR's own probabilities and per-class sigmoids."""
    candidates: dict[str, Callable[[], object]] = {
        "LinearSVC + temperature (shipped)": TemperatureScaledSVM,
        "LinearSVC + sigmoid per class": lambda: CalibratedClassifierCV(
            LinearSVC(C=0.5, class_weight="balanced", random_state=SEED),
            method="sigmoid",
            cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED),
            ensemble=False,
        ),
        "LogisticRegression C=10, own probabilities": lambda: LogisticRegression(
            C=10, class_weight="balanced", max_iter=3000
        ),
    }
    truth = np.array([example.category.value for example in examples])
    texts = [model_text(example.subject, example.body) for example in examples]
    folds = list(StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED).split(texts, truth))
    print(f"calibration of the category head, 5-fold (threshold {DEFAULT_CONFIDENCE_THRESHOLD}):")
    print(
        f"  {'head':44} {'ECE':>6} {'log loss':>9} {'escalated':>10} {'acc kept':>9} {'fit CPU s':>10}"
    )
    for name, make in candidates.items():
        probabilities = np.zeros((len(truth), len(set(truth))))
        classes = np.array(sorted(set(truth)))
        cpu = 0.0
        for train_index, test_index in folds:
            features = make_features()
            train_matrix = features.fit_transform([texts[i] for i in train_index])
            test_matrix = features.transform([texts[i] for i in test_index])
            head = make()
            started = time.process_time()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # LR's convergence chatter
                head.fit(train_matrix, truth[train_index])  # type: ignore[attr-defined]
            cpu += time.process_time() - started
            probabilities[test_index] = head.predict_proba(test_matrix)  # type: ignore[attr-defined]
        confidence = probabilities.max(axis=1)
        kept = confidence >= DEFAULT_CONFIDENCE_THRESHOLD
        predicted = classes[probabilities.argmax(axis=1)]
        kept_accuracy = float((predicted[kept] == truth[kept]).mean()) if kept.any() else 0.0
        print(
            f"  {name:44} {expected_calibration_error(probabilities, truth, classes):6.3f}"
            f" {log_loss(truth, probabilities, labels=classes):9.3f} {1 - kept.mean():10.1%}"
            f" {kept_accuracy:9.3f} {cpu / len(folds):10.2f}"
        )


def speed(examples: Sequence[LabelledExample]) -> None:
    """Print training time and classify throughput of the shipped model."""
    started, cpu_started = time.perf_counter(), time.process_time()
    model = OfflineModel(examples, version=dataset_version(LABELLED_SET.read_bytes()))
    print(
        f"training on all {len(examples)} examples: {time.perf_counter() - started:.2f} s wall, "
        f"{time.process_time() - cpu_started:.2f} s CPU"
    )
    classifier = OfflineClassifier(model=model)
    messages = [(example.subject, example.body) for example in examples] * 2
    started, cpu_started = time.perf_counter(), time.process_time()
    for subject, body in messages:
        classifier.classify(subject, body)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(
        f"classify {len(messages)} messages one at a time: {len(messages) / elapsed:,.0f} "
        f"messages/s wall, {cpu / len(messages) * 1000:.2f} ms CPU each"
    )
    big_body = "Please see the order below. " * 40_000  # about 1.1 MB
    started = time.process_time()
    classifier.classify("Order", big_body)
    print(
        f"classify a 1.1 MB body: {(time.process_time() - started) * 1000:.2f} ms CPU (truncated)"
    )


def main() -> None:
    """Print the offline classifier's figures."""
    examples = read_labelled_examples()
    languages = Counter(example.language for example in examples)
    print(
        f"labelled set: {len(examples)} messages ("
        + ", ".join(f"{language} {count}" for language, count in languages.most_common())
        + f"), shipped model {load_offline_model().version}"
    )
    held_out(examples)
    cross_validated(examples)
    compare_calibration(examples)
    speed(examples)
    print("(command: .venv/bin/python -m bench offline_classifier)")
