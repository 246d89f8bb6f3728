"""Tests against a real model server (see conftest.py; `make integration`)."""
