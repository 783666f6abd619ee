{
  # A strict stand-in for nixpkgs, for offline evaluation only (tests/flake/check.sh). It has
  # the same attribute paths and argument names as the nixpkgs functions listed here
  # (nixos-26.05 era, read in NixOS/nixpkgs) and THROWS on an argument name the real function
  # does not take. Its derivations are trivial shell scripts: passing this proves the flake's
  # structure, never that the real build works. Attributes missing here are errors: when the
  # flake needs one that really exists in nixpkgs, add it here after reading its definition.
  description = "strict offline stand-in for nixpkgs (structure checks only)";
  outputs = { self }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
      checkArgs = fname: allowed: required: args:
        let
          names = builtins.attrNames args;
          bad = builtins.filter (n: !(builtins.elem n allowed)) names;
          missing = builtins.filter (n: !(builtins.elem n names)) required;
        in
        if bad != [ ] then throw "stub ${fname}: unknown argument(s): ${toString bad}"
        else if missing != [ ] then throw "stub ${fname}: missing argument(s): ${toString missing}"
        else args;
      pathsOf = fs: if builtins.isList fs then builtins.concatMap pathsOf fs else [ fs ];
      lib = rec {
        inherit genAttrs;
        fileset = {
          toSource = args:
            let a = checkArgs "lib.fileset.toSource" [ "root" "fileset" ] [ "root" "fileset" ] args;
                missing = builtins.filter (p: builtins.isPath p && !(builtins.pathExists p)) (pathsOf a.fileset);
            in if missing != [ ] then throw "stub lib.fileset.toSource: missing paths: ${toString missing}" else a.root;
          unions = xs: xs;
          union = a: b: [ a b ];
          intersection = a: b: [ a b ];
          difference = a: b: [ a ];
          fileFilter = f: p: p;
          maybeMissing = p: p;
          gitTracked = p: p;
        };
        getExe = d: "${d}/bin/${d.meta.mainProgram or d.pname or d.name}";
        getExe' = d: n: "${d}/bin/${n}";
        makeBinPath = ds: builtins.concatStringsSep ":" (map (d: "${d}/bin") ds);
        cleanSource = s: s;
        optional = c: x: if c then [ x ] else [ ];
        optionals = c: l: if c then l else [ ];
        optionalString = c: s: if c then s else "";
        optionalAttrs = c: s: if c then s else { };
        mapAttrs = builtins.mapAttrs;
        mapAttrsToList = f: s: map (n: f n s.${n}) (builtins.attrNames s);
        concatStringsSep = builtins.concatStringsSep;
        concatMapStringsSep = sep: f: l: builtins.concatStringsSep sep (map f l);
        escapeShellArg = s: "'${s}'";
        licenses = { mit = { }; asl20 = { }; };
        platforms = { linux = systems; all = systems; };
        systems.flakeExposed = systems;
        importTOML = p: builtins.fromTOML (builtins.readFile p);
        versions = { majorMinor = v: v; };
      };
      mkDrv = system: name: extra: derivation ({
        inherit name system;
        builder = "/bin/sh"; PATH = "/usr/bin:/bin";
        args = [ "-c" "mkdir -p $out/bin; printf '#!/bin/sh\\necho stub ${name}\\n' > $out/bin/${name}; chmod +x $out/bin/${name}" ];
      } // extra) // { meta.mainProgram = name; pname = name; version = "0-stub"; };
      ociConfigKeys = [ "User" "ExposedPorts" "Env" "Entrypoint" "Cmd" "Volumes" "WorkingDir" "Labels" "StopSignal" "ArgsEscaped" "Healthcheck" "OnBuild" "Shell" ];
      streamArgs = [ "name" "tag" "fromImage" "contents" "config" "architecture" "created" "mtime" "uid" "gid" "uname" "gname" "maxLayers" "extraCommands" "fakeRootCommands" "enableFakechroot" "includeStorePaths" "includeNixDB" "passthru" "meta" "layeringPipeline" "debug" ];
      checkImage = fname: allowed: args:
        let a = checkArgs fname allowed [ "name" ] args;
        in builtins.seq (checkArgs "${fname}.config" ociConfigKeys [ ] (a.config or { })) a;
      mkPkgs = system:
        let d = mkDrv system;
            pkg = name: d name { };
            rustPlatform = {
              buildRustPackage = args:
                let a = if builtins.isFunction args then args { } else args;
                    hasDeps = a ? cargoLock || a ? cargoHash || a ? cargoDeps;
                in if !(a ? src) then throw "stub buildRustPackage: src missing"
                   else if !(a ? pname || a ? name) then throw "stub buildRustPackage: pname missing"
                   else if !hasDeps then throw "stub buildRustPackage: need cargoLock, cargoHash or cargoDeps"
                   else builtins.seq (checkArgs "buildRustPackage.cargoLock" [ "lockFile" "lockFileContents" "outputHashes" "allowBuiltinFetchGit" ] [ ] (a.cargoLock or { }))
                     (d (a.pname or a.name) { } // { meta = (a.meta or { }) // { mainProgram = (a.meta or { }).mainProgram or (a.pname or a.name); }; });
            };
            names = [ "hello" "kind" "kubectl" "istioctl" "kubernetes-helm" "kustomize" "curl" "jq" "yq-go"
                      "coreutils" "gnugrep" "gnused" "gawk" "findutils" "bash" "cacert" "tzdata" "shellcheck"
                      "nixfmt-rfc-style" "nixfmt" "cargo" "rustc" "clippy" "rustfmt" "rust-analyzer" "cargo-nextest"
                      "wrk" "hyperfine" "python3" "docker" "docker-client" "skopeo" "crane" "dive" "git" "gnutar" "gzip" "netcat" "procps"
                      "util-linux" "iproute2" "which" "openssl" "pkg-config" "gnumake" "cargo-watch" "taplo" "yamllint" "kubeconform" ];
          self = (genAttrs names pkg) // rec {
          inherit lib rustPlatform;
          stdenv = { hostPlatform = { isLinux = true; system = system; }; mkDerivation = args: d (args.pname or args.name) { }; };
          pkgsStatic = { inherit rustPlatform; stdenv = stdenv; };
          pkgsCross.musl64 = { inherit rustPlatform; };
          dockerTools = {
            streamLayeredImage = args: let a = checkImage "dockerTools.streamLayeredImage" streamArgs args; in d "stream-${a.name}" { } // { imageName = a.name; imageTag = a.tag or "stub"; };
            buildLayeredImage = args: let a = checkImage "dockerTools.buildLayeredImage" (streamArgs ++ [ "compressor" ]) args; in d "${a.name}.tar" { } // { imageName = a.name; imageTag = a.tag or "stub"; };
            buildImage = args: let a = checkImage "dockerTools.buildImage" [ "name" "tag" "fromImage" "fromImageName" "fromImageTag" "copyToRoot" "keepContentsDirlinks" "config" "architecture" "runAsRoot" "diskSize" "buildVMMemorySize" "created" "uid" "gid" "compressor" "includeNixDB" "meta" "passthru" ] args; in d "${a.name}.tar" { } // { imageName = a.name; imageTag = a.tag or "stub"; };
            caCertificates = pkg "ca-certificates";
            fakeNss = pkg "fake-nss";
            usrBinEnv = pkg "usr-bin-env";
            binSh = pkg "bin-sh";
            pullImage = args: let a = checkArgs "dockerTools.pullImage" [ "imageName" "imageDigest" "sha256" "hash" "finalImageName" "finalImageTag" "os" "arch" "tlsVerify" "name" ] [ "imageName" "imageDigest" ] args; in d "pulled-${baseNameOf a.imageName}" { };
          };
          writeShellApplication = args:
            let a = checkArgs "writeShellApplication" [ "name" "text" "runtimeInputs" "runtimeEnv" "meta" "passthru" "checkPhase" "excludeShellChecks" "extraShellCheckFlags" "bashOptions" "derivationArgs" "inheritPath" ] [ "name" "text" ] args;
            in d a.name { } // { meta.mainProgram = a.name; };
          writeShellScriptBin = name: text: d name { };
          writeShellScript = name: text: d name { };
          writeText = name: text: d name { };
          runCommand = name: env: script: d name { };
          runCommandLocal = name: env: script: d name { };
          symlinkJoin = args: d (checkArgs "symlinkJoin" [ "name" "paths" "postBuild" "meta" "passthru" "pname" "version" ] [ "paths" ] args).name or "joined" { };
          # like the real mkShell, any other attribute becomes an environment variable of the shell
          mkShell = args: d (args.name or "shell") { };
          mkShellNoCC = mkShell;
          runtimeShell = "/bin/sh";
          callPackage = f: args:
            let fn = if builtins.isFunction f then f else import f;
            in fn (builtins.intersectAttrs (builtins.functionArgs fn) self // args);
        };
        in self;
    in {
      inherit lib;
      legacyPackages = genAttrs systems mkPkgs;
    };
}
