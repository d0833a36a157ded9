from sioplay.cli import main

main()
