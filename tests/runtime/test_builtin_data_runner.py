"""The built-in data's Beam job runs one DirectRunner worker per core, a few at most."""

from vcaption.runtime import builtin_data


def test_one_local_worker_per_core_up_to_the_cap():
    assert builtin_data.local_runner_flags(1) == []  # one core: the in-process runner
    assert builtin_data.local_runner_flags(2) == ["--direct_num_workers", "2",
                                                  "--direct_running_mode", "multi_processing"]
    assert builtin_data.local_runner_flags(64)[1] == str(builtin_data.MAX_LOCAL_WORKERS)
