from ._kakunin import *  # noqa: F401,F403
from ._kakunin import __version__ as __version__
