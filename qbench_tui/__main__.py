from qbench_tui.cli import main

raise SystemExit(main())
