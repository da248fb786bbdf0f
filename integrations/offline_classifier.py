"""The classifier Salesbot ships for when Claude is away: n-gram models trained on our own set.

Three heads (category, sentiment, intent) share one set of features: TF-IDF of word 1-2-grams
and of character 3-5-grams within word boundaries (they carry the Spanish, French and German
replies and misspellings that whole words miss). Each head is a linear SVM whose margins become
probabilities by temperature scaling: one inverse temperature per head, fitted on 5-fold
out-of-fold margins.

Why not LogisticRegression's own probabilities, or per-class calibration (measured 5-fold on
the labelled set; `python -m bench offline_classifier` prints the comparison): at the
regularisation that classifies best, LR's probabilities are far too flat (category ECE 0.24; at
the 0.7 threshold it escalates 79 % of the messages) and it needs about ten times the CPU to
fit. One-vs-rest sigmoid calibration fits two parameters per class from about 25 examples of
that class, and for a similar log loss it escalates 53 % of the messages where temperature
scaling escalates 32 % (ECE 0.09 against 0.06). Temperature scaling fits one number per head
from every example, which is what a set this small can support.

The model is not committed as a file: training takes about 1.5 s of CPU, so it is trained from
`offline_data/labelled_replies.jsonl` at first use, once per process (thread-safe), and named by
a hash of the labelled set and of the model's settings. Nothing to unpickle, nothing binary in
the repository. `python -m integrations.offline_classifier` trains it and prints its version.

Reps' corrections teach it too: `salesbot inbound train` exports them (the latest labels of
each re-labelled message) to a per-deployment file in the labelled set's format
(`OFFLINE_CORRECTIONS_FILE`), and a classifier given that file (`extra_examples`) trains on
the labelled set plus it. The file's bytes are part of the model's version, and a running
classifier notices a new file (its size and modification time, checked at each use) and
trains again, so a worker picks up `train` without a restart.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import FeatureUnion
from sklearn.svm import LinearSVC

from domain.classification import (
    DEFAULT_CONFIDENCE_THRESHOLD,
    HIDDEN_TEXT_NOTE,
    INJECTION_REASON,
    Category,
    Classification,
    ClassifyRequest,
    Decider,
    Entities,
    Intent,
    Sentiment,
    escalate_if_unsure,
)
from domain.email_message import EmailFlag
from domain.errors import ExternalServiceError
from domain.safety import CleanedText, looks_like_injection, remove_invisible_characters
from integrations import metrics

#: The labelled set the shipped model is trained from (JSON Lines, see offline_data/README.md).
LABELLED_SET = Path(__file__).parent / "offline_data" / "labelled_replies.jsonl"

#: Characters of the subject and body read; the rest is ignored (bounded time per message).
#: A whole AMC order fits in 4,000 characters; replies are far shorter.
SUBJECT_LIMIT = 300
BODY_LIMIT = 4_000

#: Everything that shapes the trained model besides the data; part of the model's version.
_SETTINGS = "tfidf word1-2 + char_wb3-5 | LinearSVC C=0.5 balanced | temperature cv5 seed0"
_SEED = 0
_FIELDS = ("category", "sentiment", "intent")
_MAX_ENTITIES = 20


@dataclass(frozen=True)
class LabelledExample:
    """One hand-labelled message of the training set."""

    subject: str
    body: str
    category: Category
    sentiment: Sentiment
    sentiment_score: float
    intent: Intent
    language: str

    def label(self, field: str) -> str:
        """Return this example's label for one head ("category", "sentiment" or "intent")."""
        return str(getattr(self, field).value)


@dataclass(frozen=True)
class Reading:
    """What the three heads read in one message, before any threshold."""

    category: Category
    category_confidence: float
    sentiment: Sentiment
    sentiment_confidence: float
    sentiment_score: float  # P(positive) - P(negative)
    intent: Intent
    intent_confidence: float


def read_labelled_examples(path: Path = LABELLED_SET) -> list[LabelledExample]:
    """Read and validate a labelled set; a bad line raises ValueError naming its number."""
    examples = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                examples.append(
                    LabelledExample(
                        subject=str(row["subject"]),
                        body=str(row["body"]),
                        category=Category(row["category"]),
                        sentiment=Sentiment(row["sentiment"]),
                        sentiment_score=float(row["sentiment_score"]),
                        intent=Intent(row["intent"]),
                        language=str(row["language"]),
                    )
                )
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path.name} line {number}: {error}") from error
    return examples


def _cut_quoted_history(body: str) -> str:
    """Drop the quoted message a reply carries below it (our own outreach, most of the time).

    The quote is the same text under every kind of reply, so it only adds noise. Plain line
    tests, no regular expression: linear in the (already bounded) body.
    """
    kept = []
    for line in body.splitlines():
        stripped = line.strip()
        lowered = stripped.lower()
        if stripped.startswith(">") or lowered.startswith("-----original message"):
            break
        if lowered.endswith(":") and any(
            marker in lowered for marker in (" wrote", " escribió", " a écrit", " schrieb")
        ):
            break
        kept.append(line)
    return "\n".join(kept)


def model_text(subject: str, body: str) -> str:
    """Return the bounded text the model reads for one message."""
    return subject[:SUBJECT_LIMIT] + "\n" + _cut_quoted_history(body[:BODY_LIMIT])


def make_features() -> FeatureUnion:
    """Return the (unfitted) features the three heads share."""
    return FeatureUnion(
        [
            (
                "words",
                TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, strip_accents="unicode"),
            ),
            (
                "chars",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=(3, 5),
                    min_df=2,
                    sublinear_tf=True,
                    strip_accents="unicode",
                ),
            ),
        ]
    )


class TemperatureScaledSVM:
    """A linear SVM whose margins become probabilities by temperature scaling.

    The temperature is fitted on out-of-fold margins (5 stratified folds), the same procedure
    as scikit-learn's `CalibratedClassifierCV(method="temperature", ensemble=False)`, written
    out so that the model is plain weights (`coef`, `intercept`, `beta`) that `OfflineModel`
    can apply to one message without scikit-learn's per-call overhead.
    """

    def __init__(self) -> None:
        """Prepare an unfitted head."""
        self.classes: list[str] = []
        self.coef = np.zeros((0, 0))
        self.intercept = np.zeros(0)
        self.beta = 1.0

    @staticmethod
    def _svm() -> LinearSVC:
        return LinearSVC(C=0.5, class_weight="balanced", random_state=_SEED)

    def fit(self, matrix: Any, labels: Sequence[str]) -> TemperatureScaledSVM:
        """Fit the SVM on every example and the temperature on out-of-fold margins."""
        folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=_SEED)
        margins = cross_val_predict(
            self._svm(), matrix, labels, cv=folds, method="decision_function"
        )
        svm = self._svm().fit(matrix, labels)
        self.classes = [str(label) for label in svm.classes_]
        self.coef = np.asarray(svm.coef_, dtype=np.float64)
        self.intercept = np.asarray(svm.intercept_, dtype=np.float64)
        truth = np.searchsorted(np.array(self.classes), np.asarray(labels))

        def mean_log_loss(log_beta: float) -> float:
            log_probabilities = log_softmax(np.exp(log_beta) * margins, axis=1)
            return float(-log_probabilities[np.arange(len(truth)), truth].mean())

        best = minimize_scalar(mean_log_loss, bounds=(-10.0, 10.0), method="bounded")
        self.beta = float(np.exp(best.x))
        return self

    def predict_proba(self, matrix: Any) -> np.ndarray:
        """Return class probabilities, one row per message, columns in `classes` order."""
        return np.asarray(softmax(self.beta * (matrix @ self.coef.T + self.intercept), axis=1))


def dataset_version(data: bytes) -> str:
    """Name a model by its labelled set and settings (12 hex digits of a SHA-256)."""
    return hashlib.sha256(_SETTINGS.encode() + b"\0" + data).hexdigest()[:12]


class _FastTfidf:
    """Apply a fitted TfidfVectorizer to one text without building scikit-learn matrices.

    Same arithmetic as `TfidfVectorizer.transform` (counts, 1 + log tf, idf, l2 norm; a test
    checks the two agree), at a fraction of its per-call cost for a single message.
    """

    def __init__(self, fitted: TfidfVectorizer, *, offset: int) -> None:
        self._analyze = fitted.build_analyzer()
        self._vocabulary: dict[str, int] = fitted.vocabulary_
        self._idf = np.asarray(fitted.idf_, dtype=np.float64)
        self._offset = offset
        self.width = len(self._vocabulary)

    def row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Return (column indices, values) of the text's non-zero features."""
        counts: dict[int, int] = {}
        for term in self._analyze(text):
            column = self._vocabulary.get(term)
            if column is not None:
                counts[column] = counts.get(column, 0) + 1
        if not counts:
            return np.zeros(0, dtype=np.intp), np.zeros(0)
        columns = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
        values = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64))) * self._idf[columns]
        return columns + self._offset, values / np.linalg.norm(values)


class OfflineModel:
    """The trained heads; read-only after training, so one instance serves every thread."""

    def __init__(self, examples: Sequence[LabelledExample], *, version: str) -> None:
        """Train the three heads on the examples (about 1.5 s of CPU for 500 of them)."""
        started = time.perf_counter()
        self.version = version
        self.example_count = len(examples)
        self.features = make_features()
        matrix = self.features.fit_transform(
            [model_text(example.subject, example.body) for example in examples]
        )
        self.heads = {
            field: TemperatureScaledSVM().fit(
                matrix, [example.label(field) for example in examples]
            )
            for field in _FIELDS
        }
        words, chars = (vectorizer for _, vectorizer in self.features.transformer_list)
        self._tfidf = (
            _FastTfidf(words, offset=0),
            _FastTfidf(chars, offset=len(words.vocabulary_)),
        )
        # All heads' weights side by side: one product scores every class of every head.
        self._weights = np.vstack([self.heads[field].coef for field in _FIELDS]).T.copy()
        self._intercepts = np.concatenate([self.heads[field].intercept for field in _FIELDS])
        self._slices = {}
        first = 0
        for field in _FIELDS:
            width = len(self.heads[field].classes)
            self._slices[field] = slice(first, first + width)
            first += width
        self.training_seconds = time.perf_counter() - started

    def feature_row(self, subject: str, body: str) -> tuple[np.ndarray, np.ndarray]:
        """Return the message's features as (column indices, values), as `features` would."""
        text = model_text(subject, body)
        parts = [tfidf.row(text) for tfidf in self._tfidf]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def read(self, subject: str, body: str) -> Reading:
        """Read one message."""
        columns, values = self.feature_row(subject, body)
        margins = values @ self._weights[columns] + self._intercepts
        probabilities = {
            field: softmax(self.heads[field].beta * margins[self._slices[field]])
            for field in _FIELDS
        }
        return self._reading(probabilities)

    def read_many(self, messages: Sequence[tuple[str, str]]) -> list[Reading]:
        """Read (subject, body) pairs; the same answers as `read`, one at a time."""
        return [self.read(subject, body) for subject, body in messages]

    def _reading(self, probabilities: dict[str, np.ndarray]) -> Reading:
        best = {}
        for field in _FIELDS:
            index = int(np.argmax(probabilities[field]))
            confidence = min(1.0, max(0.0, float(probabilities[field][index])))
            best[field] = (self.heads[field].classes[index], confidence)
        sentiment_classes = self.heads["sentiment"].classes
        score = float(
            probabilities["sentiment"][sentiment_classes.index(Sentiment.POSITIVE.value)]
            - probabilities["sentiment"][sentiment_classes.index(Sentiment.NEGATIVE.value)]
        )
        return Reading(
            category=Category(best["category"][0]),
            category_confidence=best["category"][1],
            sentiment=Sentiment(best["sentiment"][0]),
            sentiment_confidence=best["sentiment"][1],
            sentiment_score=min(1.0, max(-1.0, score)),
            intent=Intent(best["intent"][0]),
            intent_confidence=best["intent"][1],
        )


def decide(
    reading: Reading, *, threshold: float, version: str, escalate: bool = True
) -> Classification:
    """Turn a reading into a Classification: below the threshold nothing is guessed.

    An unsure category becomes ESCALATE, and an ESCALATE says nothing about sentiment or intent
    either (neutral, 0, none): a person reads the message. With a sure category, an unsure
    sentiment is neutral with score 0, so the score's sign always agrees with the label, and an
    unsure intent is none, since intents trigger actions such as an opt-out. With
    `escalate=False` the category keeps its confidence, whatever it is, for a caller that
    applies its own threshold (the pipeline, with the organization's).
    """
    sure_sentiment = reading.sentiment_confidence >= threshold
    result = Classification(
        category=reading.category,
        confidence=reading.category_confidence,
        sentiment=reading.sentiment if sure_sentiment else Sentiment.NEUTRAL,
        sentiment_score=reading.sentiment_score if sure_sentiment else 0.0,
        intent=reading.intent if reading.intent_confidence >= threshold else Intent.NONE,
        decided_by=Decider.OFFLINE,
        decided_detail=f"offline model {version}",
    )
    if escalate:
        result = escalate_if_unsure(result, threshold=threshold)
    if result.category is Category.ESCALATE:
        result = result.model_copy(
            update={
                "sentiment": Sentiment.NEUTRAL,
                "sentiment_score": 0.0,
                "intent": Intent.NONE,
                "reason": result.reason or "the offline model reads it as one for a person",
            }
        )
    return result


# Order numbers as AMC and lender mail writes them: "Order #: AO-482913", "Order Number: 88231",
# "Orden #AO-50218", "Commande n° : 77-30418", "Auftragsnummer: GA-60217". Every repetition is
# bounded ({0,4}, {2,24}), so the scan stays linear on the bounded text.
_ORDER_NUMBER = re.compile(
    r"\b(?:order|orden|commande|auftrag(?:snummer)?|assignment)\b"
    r"[\s#:.]{0,4}(?:no\b\.?|nr\b\.?|n°|number|id\b|n[uú]mero)?[\s#:.]{0,4}"
    r"([A-Z0-9][A-Z0-9-]{2,24})",
    re.IGNORECASE,
)
# "$525.00", "$1,250", "$1.85M", and the "550 $" / "600,00 $" of French and German mail.
_AMOUNT = re.compile(
    r"\$\s?\d{1,3}(?:,\d{3})*(?:\.\d{1,2})?(?:\s?[MK]\b)?"
    r"|\b\d{1,3}(?:[.,\u202f]\d{3})*(?:,\d{2})?\s?\$"
)


def extract_entities(subject: str, body: str) -> Entities:
    """Pull order numbers and money amounts out of a message, as written, first 20 of each."""
    text = subject[:SUBJECT_LIMIT] + "\n" + body[:BODY_LIMIT]
    orders: list[str] = []
    for match in _ORDER_NUMBER.finditer(text):
        number = match.group(1).strip("-")
        if any(char.isdigit() for char in number) and number not in orders:
            orders.append(number)
            if len(orders) == _MAX_ENTITIES:
                break
    amounts: list[str] = []
    for match in _AMOUNT.finditer(text):
        amount = match.group(0).strip()
        if amount not in amounts:
            amounts.append(amount)
            if len(amounts) == _MAX_ENTITIES:
                break
    return Entities(order_numbers=orders, amounts=amounts)


_TRAINED: dict[tuple[Path, Path | None, tuple[int, int] | None], OfflineModel] = {}
_TRAINING = threading.Lock()


def file_stamp(path: Path | None) -> tuple[int, int] | None:
    """Return (modification time in ns, size) of a file, or None when there is none."""
    if path is None:
        return None
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_mtime_ns, found.st_size


def load_offline_model(path: Path = LABELLED_SET, *, extra: Path | None = None) -> OfflineModel:
    """Return the model trained from the labelled set (and from `extra`, reps' corrections
    in the same format, when that file exists), training it on the first call only."""
    key = path.resolve()
    more = extra.resolve() if extra is not None else None
    cache_key = (key, more, file_stamp(more))
    model = _TRAINED.get(cache_key)
    if model is None:
        with _TRAINING:  # one training per process, however many threads ask at once
            model = _TRAINED.get(cache_key)
            if model is None:
                data = key.read_bytes()
                examples = read_labelled_examples(key)
                if cache_key[2] is not None and more is not None:
                    added = more.read_bytes()
                    data += b"\0" + added
                    examples += read_labelled_examples(more)
                model = OfflineModel(examples, version=dataset_version(data))
                _TRAINED[cache_key] = model
    return model


def category_accuracy(examples: Sequence[LabelledExample], *, folds: int = 5) -> float:
    """Return the category head's accuracy, cross-validated over stratified folds (the
    features fitted within each fold), the figure `salesbot inbound train` prints."""
    from sklearn.pipeline import make_pipeline

    labels = [example.label("category") for example in examples]
    smallest = min(labels.count(label) for label in set(labels))
    splits = max(2, min(folds, smallest))
    predicted = cross_val_predict(
        make_pipeline(make_features(), TemperatureScaledSVM._svm()),
        [model_text(example.subject, example.body) for example in examples],
        labels,
        cv=StratifiedKFold(n_splits=splits, shuffle=True, random_state=_SEED),
    )
    return float(np.mean(np.asarray(predicted) == np.asarray(labels)))


class OfflineClassifier:
    """Classify inbound mail without any outside service (no key, or Claude away)."""

    def __init__(
        self,
        *,
        confidence_threshold: float = DEFAULT_CONFIDENCE_THRESHOLD,
        model: OfflineModel | None = None,
        extra_examples: Path | None = None,
    ) -> None:
        """Use `model`, or the shipped one trained at the first `classify` on the labelled
        set plus `extra_examples` (reps' corrections exported by `salesbot inbound train`)
        when that file exists; a new file is trained on at the next use."""
        self.confidence_threshold = confidence_threshold
        self._model = model
        self._fixed = model is not None
        self._extra = extra_examples
        self._stamp = file_stamp(extra_examples)

    @property
    def model(self) -> OfflineModel:
        """The trained model (trains the shipped one on first use, again on a new file)."""
        model = self._model
        if not self._fixed:
            stamp = file_stamp(self._extra)
            if model is None or stamp != self._stamp:
                model = self._model = load_offline_model(extra=self._extra)
                self._stamp = stamp
        if model is None:  # never: a classifier without a model has no file to be fixed on
            raise RuntimeError("the offline classifier has no model")
        return model

    @property
    def name(self) -> str:
        """ "offline:<version>" (trains the shipped model on first use)."""
        return f"offline:{self.model.version}"

    @overload
    def classify(self, request: ClassifyRequest) -> Classification: ...

    @overload
    def classify(self, request: str, body: str) -> Classification: ...

    def classify(self, request: ClassifyRequest | str, body: str | None = None) -> Classification:
        """Classify one message.

        Given a ClassifyRequest (domain.ports.MessageClassifier) the category keeps its
        confidence, for the pipeline to weigh against the organization's threshold; given
        `(subject, body)` a category below `confidence_threshold` is ESCALATE. Unsure
        sentiment and intent are neutral and none either way. Never raises
        ExternalServiceError: nothing outside the process is called.
        """
        if isinstance(request, ClassifyRequest):
            return self._classify_request(request)
        subject, text = request, body or ""
        model = self.model
        result = decide(
            model.read(subject, text), threshold=self.confidence_threshold, version=model.version
        )
        return result.model_copy(update={"entities": extract_entities(subject, text)})

    def classify_many(
        self, requests: Sequence[ClassifyRequest]
    ) -> list[Classification | ExternalServiceError]:
        """Classify messages in order (in this thread: each takes well under a millisecond)."""
        results: list[Classification | ExternalServiceError] = []
        for request in requests:
            started = time.monotonic()
            results.append(self._classify_request(request))
            metrics.CLASSIFICATION_LATENCY.labels("offline").observe(time.monotonic() - started)
        return results

    def _classify_request(self, request: ClassifyRequest) -> Classification:
        subject = remove_invisible_characters(request.subject)
        body = remove_invisible_characters(request.body)
        notes: list[str] = [HIDDEN_TEXT_NOTE] if EmailFlag.HIDDEN_TEXT in request.flags else []
        removed = CleanedText(
            "", zero_width=subject.zero_width + body.zero_width, bidi=subject.bidi + body.bidi
        )
        notes += removed.notes
        injection = (
            EmailFlag.HIDDEN_INSTRUCTIONS in request.flags
            or looks_like_injection(subject.text)
            or looks_like_injection(body.text)
        )
        model = self.model
        result = decide(
            model.read(subject.text, body.text),
            threshold=self.confidence_threshold,
            version=model.version,
            escalate=False,
        )
        update: dict[str, Any] = {
            "entities": extract_entities(subject.text, body.text),
            "notes": tuple(notes),
        }
        if injection:
            update["injection_attempt"] = True
            update["reason"] = INJECTION_REASON
        return result.model_copy(update=update)


def main(argv: Sequence[str] | None = None) -> int:
    """Train the shipped model and print its version; classify a message given as arguments."""
    args = list(sys.argv[1:] if argv is None else argv)
    model = load_offline_model()
    sys.stdout.write(
        f"offline model {model.version}: {model.example_count} examples from "
        f"{LABELLED_SET.name}, trained in {model.training_seconds:.2f} s\n"
    )
    if args:
        subject, body = args[0], " ".join(args[1:])
        result = OfflineClassifier(model=model).classify(subject, body)
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
