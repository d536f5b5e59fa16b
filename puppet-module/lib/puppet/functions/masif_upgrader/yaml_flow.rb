# frozen_string_literal: true

require 'json'

# Renders a value as a one-line YAML flow value (which is what JSON is), so strings with
# quotes, colons or non-ASCII text are always quoted correctly in the config templates.
# The Ansible roles render the same values with `to_json(separators=(',', ':'))`.
Puppet::Functions.create_function(:'masif_upgrader::yaml_flow') do
  dispatch :render do
    param 'Variant[String, Integer, Boolean, Array, Hash]', :value
    return_type 'String'
  end

  def render(value)
    JSON.generate(value)
  end
end
