from tcodec.training.taco import main

main()
