"""Evaluation: pure metric functions (metrics.py), AQI (aqi.py), judges (judges.py), TruthfulQA
(truthfulqa.py) and the runner that logs them to MLflow (runner.py)."""
