"""Contracts shared by jobs/ and serving/: tables, Redis layout, manifests, item text.

Nothing here does I/O at import time or imports pyspark, TensorFlow or torch; the encoder
is loaded lazily by `schemas.text.load_encoder`.
"""
