import platform

import pytest

from softlabels._memory import bounded_heap, release_freed_memory


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_on_glibc_the_threshold_is_fixed_and_freed_memory_returned():
    with bounded_heap() as active:
        assert active is True
    assert release_freed_memory() is True
