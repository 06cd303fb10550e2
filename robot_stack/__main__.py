import sys

from robot_stack.cli import main

sys.exit(main())
