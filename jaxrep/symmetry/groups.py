"""Moved to ``jaxrep.groups`` (actions there take ``act(g, x)``); alias for experiments/ only."""
from jaxrep.groups import sample_o3  # TODO(lead): alias for experiments/, remove after migration
