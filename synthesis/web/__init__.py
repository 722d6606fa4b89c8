"""The web page of ``lexibatch serve`` (package data)."""
