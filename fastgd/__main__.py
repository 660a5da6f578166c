import sys

from fastgd.cli import main

sys.exit(main())
