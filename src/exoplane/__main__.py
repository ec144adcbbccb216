from exoplane.cli import main

main()
