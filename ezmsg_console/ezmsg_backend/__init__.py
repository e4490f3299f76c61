"""The ezmsg 3.9 backend: attach the console and headless tools to upstream ezmsg GraphServers.

Only modules of this package import ``ezmsg`` (the optional ``[ezmsg]`` extra),
and nothing imports them unless the ezmsg backend is used: :mod:`.source`
(EzmsgSource, over upstream's own GraphContext), :mod:`.translate` and
:mod:`.schema` (upstream objects as this project's types; these two import no
ezmsg), :mod:`.procinfo` and :mod:`.demo` (the demo pipeline written against
``ezmsg.core``).
"""
