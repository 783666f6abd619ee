{
  description = "myhelloworld: Rust hello-world service whose request spans join Istio mesh traces in Jaeger";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      # Linux only (a static musl binary in an OCI image). aarch64-linux needs nothing extra:
      # pkgsStatic and dockerTools pick the target and the image architecture themselves.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];

      # Name, version and description come from Cargo.toml: the image tag is the crate version.
      crate = (lib.importTOML ./Cargo.toml).package;

      # What cargo reads from tests/: integration tests (tests/*.rs, tests/common/) and the
      # proptest seeds they replay. Not tests/e2e nor the shell scripts.
      isCargoTestFile = file: file.hasExt "rs" || file.hasExt "proptest-regressions";

      mkOutputs =
        pkgs:
        let
          # Statically linked (x86_64-unknown-linux-musl): the image needs no libc, no loader.
          myhelloworld = pkgs.pkgsStatic.rustPlatform.buildRustPackage {
            pname = crate.name;
            inherit (crate) version;
            # Only what cargo reads, so edits to k8s/ or scripts do not rebuild the binary.
            src = lib.fileset.toSource {
              root = ./.;
              fileset = lib.fileset.unions [
                ./Cargo.toml
                ./Cargo.lock
                ./src
                # Unit tests check its configuration and metrics tables against the code.
                ./README.md
                (lib.fileset.fileFilter isCargoTestFile ./tests)
              ];
            };
            # One fixed-output fetch per crate, keyed by the checksums in Cargo.lock:
            # no vendor hash to keep in sync (only git dependencies would need outputHashes).
            cargoLock.lockFile = ./Cargo.lock;
            # `cargo test` runs in the build (nixpkgs' cargoCheckHook: release profile, the musl
            # target, --frozen), in a sandbox with loopback only and no /etc/resolv.conf. .ci/run
            # runs that same command under the same conditions (tests/nix-sandbox.sh), so a test
            # that needs more (DNS, another host) fails in CI first. What needs chroot/unshare
            # stays out of `cargo test` (tests/distroless.sh). No test is skipped.
            doCheck = true;
            meta = {
              inherit (crate) description;
              license = lib.licenses.mit;
              mainProgram = crate.name;
              platforms = lib.platforms.linux;
            };
          };

          imageArgs = {
            inherit (crate) name;
            # Never "latest": the kubelet would then try to pull it instead of using the loaded one.
            tag = crate.version;
            # The CA bundle under /etc/ssl/certs. The binary itself comes in through the store path
            # in Entrypoint; nothing else is added: no shell, no package manager, no libc.
            contents = [ pkgs.dockerTools.caCertificates ];
            config = {
              Entrypoint = [ (lib.getExe myhelloworld) ];
              # distroless "nonroot"; numeric, so it needs no /etc/passwd and passes runAsNonRoot.
              User = "65532:65532";
              ExposedPorts = {
                "8080/tcp" = { };
              };
              Env = [
                "PORT=8080"
                "RUST_LOG=info"
                "SSL_CERT_FILE=/etc/ssl/certs/ca-bundle.crt"
              ];
              Labels = {
                "org.opencontainers.image.title" = crate.name;
                "org.opencontainers.image.version" = crate.version;
                "org.opencontainers.image.description" = crate.description;
                "org.opencontainers.image.licenses" = crate.license;
              };
            };
          };

          # Uncompressed docker-archive (myhelloworld.tar): `docker load` takes it, and so does
          # `kind load image-archive`, whose `ctr images import` cannot read gzip.
          image = pkgs.dockerTools.buildLayeredImage (imageArgs // { compressor = "none"; });

          # Same image as a script that streams the tar to stdout (no tarball kept in the store):
          # `$(nix build --print-out-paths .#imageStream) | docker load`.
          imageStream = pkgs.dockerTools.streamLayeredImage imageArgs;

          e2e = pkgs.writeShellApplication {
            name = "e2e";
            # docker (kind's node provider) comes from the host PATH: it needs a running daemon.
            runtimeInputs = with pkgs; [
              kind
              kubectl
              istioctl
              curl
              jq
              coreutils
            ];
            runtimeEnv = {
              IMAGE_ARCHIVE = "${image}";
              MANIFESTS = "${./k8s}";
              E2E_DIR = "${./tests/e2e}";
            };
            text = builtins.readFile ./tests/e2e/run.sh;
          };

          shellcheckExe = lib.getExe' pkgs.shellcheck "shellcheck";
          nixfmtExe = lib.getExe' pkgs.nixfmt "nixfmt";

          # Every shell script in the repository, for the shellcheck check.
          shellScripts = lib.fileset.toSource {
            root = ./.;
            fileset = lib.fileset.fileFilter (file: file.hasExt "sh") ./.;
          };

          # Makes Nix write the runtime closure of myhelloworld to ./graph in the build directory.
          closureGraph = {
            exportReferencesGraph = [
              "graph"
              myhelloworld
            ];
          };
        in
        {
          packages = {
            default = myhelloworld;
            inherit myhelloworld image imageStream;
          };

          apps = {
            default = {
              type = "app";
              program = lib.getExe myhelloworld;
              meta.description = "Run the myhelloworld service (PORT, JAEGER_AGENT_HOST, JAEGER_AGENT_PORT from the environment)";
            };
            e2e = {
              type = "app";
              program = lib.getExe e2e;
              meta.description = "End-to-end test: kind cluster with Istio and Jaeger, load the image, check the mesh trace";
            };
          };

          devShells.default = pkgs.mkShell {
            packages = with pkgs; [
              cargo
              rustc
              clippy
              rustfmt
              rust-analyzer
              kind
              kubectl
              istioctl
              jq
              curl
              shellcheck
              wrk
              nixfmt
            ];
          };

          checks = {
            # The static binary; its build runs `cargo test`.
            inherit myhelloworld;

            # The e2e script as `nix run .#e2e` gets it (writeShellApplication shellchecks it).
            inherit e2e;

            shellcheck = pkgs.runCommandLocal "shellcheck" { } ''
              cd ${shellScripts}
              find . -name '*.sh' -exec ${shellcheckExe} --shell=bash -x --source-path=SCRIPTDIR {} +
              touch $out
            '';

            # What `nix fmt` would change (formatter below).
            format = pkgs.runCommandLocal "nixfmt-check" { } ''
              ${nixfmtExe} --check ${./flake.nix}
              touch $out
            '';

            # The image holds only the binary: its runtime closure must be itself alone
            # (no musl/glibc, no rustc, no vendored crate sources).
            closure = pkgs.runCommandLocal "myhelloworld-closure" closureGraph ''
              # Per store path: the path, a deriver line, the number of references, then those.
              paths=()
              while read -r path && read -r _ && read -r n; do
                paths+=("$path")
                for ((i = 0; i < n; i++)); do read -r _; done
              done < graph
              if [ "''${#paths[@]}" -ne 1 ]; then
                echo "runtime closure of myhelloworld is more than the binary:" >&2
                printf '  %s\n' "''${paths[@]}" >&2
                exit 1
              fi
              touch $out
            '';
          };

          # nixfmt is the RFC 166 formatter; nixfmt-rfc-style is a deprecated alias of it in 26.05.
          formatter = pkgs.nixfmt;
        };

      perSystem = lib.genAttrs systems (system: mkOutputs nixpkgs.legacyPackages.${system});
      forEach = output: lib.mapAttrs (_: outputs: outputs.${output}) perSystem;
    in
    {
      packages = forEach "packages";
      apps = forEach "apps";
      devShells = forEach "devShells";
      checks = forEach "checks";
      formatter = forEach "formatter";
    };
}
