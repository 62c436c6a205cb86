# bash completion for iommu. The suggestions come from the binary itself: System.CommandLine's [suggest:N]
# directive completes the command line up to the cursor (subcommands, options). Where it has nothing to offer (a
# path after --source), bash falls back to file names. Installed by `./build.sh install` into
# PREFIX/share/bash-completion/completions/iommu.
_iommu() {
	local cur=${COMP_WORDS[COMP_CWORD]}
	local line=${COMP_LINE:0:COMP_POINT}
	local IFS=$'\n'
	local words
	# "/?" and "/h" are Windows-style aliases of --help: never offered.
	words=$("${COMP_WORDS[0]}" "[suggest:${#line}]" "$line" 2>/dev/null | grep -v '^/')
	COMPREPLY=()
	[ -n "$words" ] && COMPREPLY=($(compgen -W "$words" -- "$cur"))
	return 0
}
complete -o default -o bashdefault -F _iommu iommu
