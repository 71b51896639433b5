"""`python -m jobs <kind>`: the entrypoint of every task container."""

import sys

from jobs.runtime import main

sys.exit(main(sys.argv[1:]))
