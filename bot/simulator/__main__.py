"""`python -m bot.simulator [options]`: the same as `python -m bot simulator`."""

from bot.simulator.cli import main

raise SystemExit(main())
