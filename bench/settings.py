"""The benchmark's settings: the shop's, plus the baseline app (``bench/baseline``)
and its URLs. The shop itself knows nothing of the benchmark."""

from shop.settings import *  # noqa: F403
from shop.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.baseline"]
ROOT_URLCONF = "bench.urls"
