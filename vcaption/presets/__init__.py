"""Named presets, one module per task; importing this package registers them all in
`vcaption.config.PRESETS` (the `@preset` decorator)."""

from vcaption.presets import captioning  # noqa: F401
