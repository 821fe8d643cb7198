import sys

from lvmharness.cli import main

sys.exit(main())
