from audits.cli import main

raise SystemExit(main())
