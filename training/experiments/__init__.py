"""The two papers' experiments, each a function that trains, evaluates and writes a report."""
