"""A wire-compatible DashScope server for the Wan image and video models, for tests, demos and
dry runs.

Our client, the CLI and the official `dashscope` SDK all talk to it as they would to DashScope:
the same routes, headers, envelopes, task life cycle, limits and errors, with real PNG results
and real H.264 MP4s for videos (`bot.simulator.video`, `bot.simulator.clip`).

Start it with `start_simulator(config)` on a running loop, `SimulatorThread(config)` for blocking
clients, or `python -m bot simulator --port 8400` from a shell. The default key is `sk-simulator`.

Control routes (no auth): `GET /_sim/state`, `GET|POST /_sim/faults`, `POST /_sim/reset`,
`POST /_sim/clock {"advance": seconds}`; see `bot.simulator.control`.

Prompt markers (deterministic, work from any process; see `bot.simulator.markers`):

    sim:moderate-input    400 DataInspectionFailed at submit
    sim:ip                400 IPInfringementSuspect at submit
    sim:moderate-image    task FAILED, DataInspectionFailed "Green net check failed for image ..."
    sim:moderate-output   task FAILED, DataInspectionFailed "Output data may contain ..."
    sim:partial=K         K of the n images fail (all of them: task FAILED)
    sim:fail=CODE         task FAILED with CODE and a fitting message
    sim:slow=SECONDS      the task runs SECONDS real seconds (the speed does not divide it)
    sim:video-mb=MB       a video's MP4 is at least MB megabytes (also: the `video_mb` fault)

Synchronous calls report a task failure as the matching HTTP error envelope instead.

wan2.6-image is served in its edit mode (one text and 1–4 images; the results tile every input
so a test can see each was used); its interleaved mode streams, which the simulator does not:
such a request gets a 400.
"""

from bot.simulator.app import create_app
from bot.simulator.config import SimulatorConfig
from bot.simulator.server import RunningSimulator, SimulatorThread, start_simulator
from bot.simulator.state import Simulator

__all__ = [
    "RunningSimulator",
    "Simulator",
    "SimulatorConfig",
    "SimulatorThread",
    "create_app",
    "start_simulator",
]
