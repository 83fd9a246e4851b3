import os

# DDS stays on this machine in every test that starts ROS 2.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
# Under pytest-xdist each worker's nodes talk in a DDS domain of their own, so that two tests that
# use the same topic names at the same time never hear each other.
if "PYTEST_XDIST_WORKER" in os.environ:
    _worker = int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw"))
    os.environ["ROS_DOMAIN_ID"] = str(int(os.environ.get("ROS_DOMAIN_ID", "0")) + 1 + _worker)

import pytest  # noqa: E402

from bin_perception.config import Config  # noqa: E402
from bin_perception.sim.dataset import simulate_bag  # noqa: E402

NUT_BAG_SCENES = 6


@pytest.fixture(scope="session")
def nut_bag(tmp_path_factory):
    """A small simulated MCAP bag: 6 bins of 3 nuts."""
    path = tmp_path_factory.mktemp("bags") / "nut_n3.mcap"
    simulate_bag("nut", 3, NUT_BAG_SCENES, seed=7, out=path, config=Config(), progress=False)
    return path
