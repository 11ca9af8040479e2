from tcodec.cli import main

main()
