import sys

from metalr.cli import main

sys.exit(main())
