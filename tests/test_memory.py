import platform

import pytest

from softlabels._memory import bound_heap_growth, release_freed_memory


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_on_glibc_the_threshold_is_fixed_and_freed_memory_returned():
    assert bound_heap_growth() is True and bound_heap_growth() is True  # once per process, cached
    assert release_freed_memory() is True
