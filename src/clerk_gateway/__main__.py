from clerk_gateway.cli import main

raise SystemExit(main())
