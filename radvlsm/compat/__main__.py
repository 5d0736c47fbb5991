"""``python -m radvlsm.compat {install,uninstall,check}``: the torchvision start-up hook."""

import sys

from radvlsm.compat.torchvision_ops import main

sys.exit(main())
