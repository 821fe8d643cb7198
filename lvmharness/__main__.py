import sys

from lvmharness.commands.main import main

sys.exit(main())
