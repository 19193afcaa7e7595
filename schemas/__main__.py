from schemas import main

main()
