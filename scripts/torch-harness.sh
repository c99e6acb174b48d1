# Sourced by the measurement scripts that compile a small program against the project (scripts/sample-accuracy.sh,
# scripts/small-layer-bench.sh). The program lives in .build/<dir> (git-ignored) inside the repository, so that the
# build props give it the TorchSharp backend and the libstdc++ step. Programs without TorchSharp (scripts/kernel-bench.sh,
# scripts/read-bandwidth.sh) get their project file from standalone_project, in a folder of their own.
#   work="$(harness_project "$root" sample-accuracy SampleAccuracy)"   # writes the project file, prints the directory
#   cat > "$work/Program.cs" <<'EOF' ... EOF
#   harness_run "$work" SampleAccuracy ARGS...                         # builds (CPU backend) and runs it
harness_project() {
  local root="$1" dir="$1/.build/$2" name="$3"
  mkdir -p "$dir"
  cat > "$dir/$name.csproj" <<'XML'
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <ImplicitUsings>enable</ImplicitUsings>
    <Nullable>enable</Nullable>
    <IsTorchHost>true</IsTorchHost>
    <IsPackable>false</IsPackable>
    <GenerateDocumentationFile>false</GenerateDocumentationFile>
  </PropertyGroup>
  <ItemGroup>
    <ProjectReference Include="../../src/CovariateShift.Training/CovariateShift.Training.csproj" />
  </ItemGroup>
</Project>
XML
  printf '%s\n' "$dir"
}

harness_run() {
  local dir="$1" name="$2"
  shift 2
  dotnet build "$dir/$name.csproj" -c Release -p:TorchBackend=cpu -o "$dir/out" -v quiet -nologo >&2
  dotnet "$dir/out/$name.dll" "$@"
}

# A project file for a program that references nothing (no TorchSharp, no build props): unsafe code allowed, tiered PGO.
#   standalone_project "$work" KernelBench '<NoWarn>$(NoWarn);CS1574</NoWarn>'   # optional extra properties
standalone_project() {
  local dir="$1" name="$2" extra="${3:-}"
  cat > "$dir/$name.csproj" <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <Nullable>enable</Nullable>
    <ImplicitUsings>enable</ImplicitUsings>
    <AllowUnsafeBlocks>true</AllowUnsafeBlocks>
    <TieredPGO>true</TieredPGO>
    $extra
  </PropertyGroup>
</Project>
XML
}
