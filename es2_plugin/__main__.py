from es2_plugin.cli import main

raise SystemExit(main())
