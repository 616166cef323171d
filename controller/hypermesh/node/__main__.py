"""``python -m hypermesh.node --config PATH``: run one node process."""

from hypermesh.node.process import main

raise SystemExit(main())
