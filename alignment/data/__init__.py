"""Data: raw records -> PreferenceExample -> token ids and masks."""
