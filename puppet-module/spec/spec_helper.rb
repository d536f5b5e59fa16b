# frozen_string_literal: true

# rspec-puppet set-up that needs no network and no gems beyond Debian's
# ruby-rspec-puppet: the module is linked into a scratch module path under its real
# name (the repository directory is called puppet-module).
require 'fileutils'
require 'tmpdir'
require 'rspec-puppet'

module_root = File.expand_path('..', __dir__)
fixture_modules = Dir.mktmpdir('masif-rspec-modules')
File.symlink(module_root, File.join(fixture_modules, 'masif_upgrader'))

RSpec.configure do |c|
  c.setup_fixtures = false # it would write spec/fixtures into the source tree
  c.module_path = fixture_modules
  c.manifest = File.join(module_root, 'spec', 'site.pp')
  c.default_facts = {
    'os' => { 'family' => 'Debian', 'name' => 'Debian', 'release' => { 'major' => '12' } },
    'osfamily' => 'Debian',
    'networking' => { 'fqdn' => 'host.example.com' },
    'masif_upgrader_puppet_group' => true,
  }
  c.after(:suite) { FileUtils.rm_rf(fixture_modules) }
end
