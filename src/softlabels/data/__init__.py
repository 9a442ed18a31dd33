"""Data: reading users' files (predictions, label maps, rater folders) and the small examples shipped here."""
