"""The business of Salesbot: entities, rules and use cases, free of frameworks."""
