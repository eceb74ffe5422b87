"""Readers for the public dataset formats, and the built-in shapes world."""
