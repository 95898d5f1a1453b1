"""The nightly pipeline: ingest, embed items, train the CF model, score, index, publish."""
