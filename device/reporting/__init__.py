"""Reporting: the face-event record and where it goes (JSONL, SQLite, MQTT, crops, the HTTP API, live stats)."""
