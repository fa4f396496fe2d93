#compdef r1

_r1_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _R1_COMPLETE=complete_zsh r1)
}

compdef _r1_completion r1
