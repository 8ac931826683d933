"""The process: command line, signals, serving, the running exporter and the demo."""
