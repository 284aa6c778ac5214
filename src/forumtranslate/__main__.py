from forumtranslate.cli import main

main()
