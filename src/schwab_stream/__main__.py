from schwab_stream.cli import main

main()
