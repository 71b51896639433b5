"""`python -m kubetask.jobs <kind>`: the entrypoint of every task container."""

import sys

from kubetask.jobs.runtime import main

sys.exit(main(sys.argv[1:]))
