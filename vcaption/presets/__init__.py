"""Named presets, one module per task; importing this package registers them all in
`vcaption.config.PRESETS` (the `@preset` decorator)."""

from vcaption.presets import captioning# noqa: F401
from vcaption.presets import retrieval# noqa: F401
from vcaption.presets import vqa# noqa: F401
from vcaption.presets import video# noqa: F401
from vcaption.presets import region_captioning# noqa: F401
from vcaption.presets import objects# noqa: F401
