"""Apache Beam jobs: preprocessing, feature extraction, batch captioning."""

import logging as _logging
import sys as _sys

# Importing Beam logs warnings about optional Google Cloud clients ("Failed to import
# GCSFileSystem", "apitools not found") that say nothing to a local run and are noise on
# Dataflow's launcher: the jobs import Beam once here, quietly, unless --verbose is given.
if "--verbose" not in _sys.argv:
    _root = _logging.getLogger()
    _level = _root.level
    _root.setLevel(_logging.ERROR)
    try:
        import apache_beam  # noqa: F401
    finally:
        _root.setLevel(_level)
