# fish completion for iommu: asks the binary (System.CommandLine's [suggest:N] directive) for the words that can
# follow the command line up to the cursor; fish adds file names (a path after --source).
# Installed by `./build.sh install` into PREFIX/share/fish/vendor_completions.d/iommu.fish.
function __iommu_suggest
    set -l line (commandline -cp)
    set -l exe (commandline -opc)[1]
    $exe "[suggest:"(string length -- "$line")"]" "$line" 2>/dev/null | string match -v -r '^/'
end
complete -c iommu -a '(__iommu_suggest)'
