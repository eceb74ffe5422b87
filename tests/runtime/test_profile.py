"""The run profile: nested phases are named by path, add up, and cost nothing outside a recording."""

import time

from vcaption.runtime import profile


def test_nested_phases_are_named_by_path_and_add_up():
    with profile.recording() as seconds:
        with profile.phase("evaluate"):
            for _ in range(2):
                with profile.phase("test"):
                    time.sleep(0.06)
        with profile.phase("export"):
            pass
    assert set(seconds) == {"evaluate", "evaluate/test", "export"}
    assert seconds["evaluate/test"] >= 0.1  # both openings counted
    assert seconds["evaluate"] >= seconds["evaluate/test"]
    line = profile.summary(seconds)
    assert line.startswith("evaluate ") and "export 0 s" in line and "test" not in line


def test_phase_outside_a_recording_records_nothing():
    with profile.phase("alone"):
        pass
    with profile.recording() as seconds:
        pass
    assert seconds == {}
