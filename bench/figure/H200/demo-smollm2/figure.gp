# lop plot: GPU utilization (%). Edit freely; run: cd <this folder> && gnuplot figure.gp
set terminal pngcairo size 1340,760 font ',10'
set output 'figure.png'
set palette defined (0 '#ffffcc', 25 '#fed976', 50 '#fd8d3c', 75 '#e31a1c', 100 '#800026')
set style fill solid 1.0
set multiplot layout 2,3
set title 'Original SmolLM2-135M - NVIDIA H200'
unset logscale x
set xlabel 'batch size'
set ylabel 'output length'
set xtics ('1' 0, '2' 1, '4' 2, '8' 3, '16' 4, '32' 5, '64' 6, '128' 7, '256' 8, '384' 9, '512' 10)
set ytics ('16' 0, '32' 1, '64' 2, '128' 3, '256' 4, '512' 5, '1024' 6)
set xrange [-0.5:10.5]
set yrange [-0.5:6.5]
unset key
set cbrange [0:100]
set cblabel 'GPU utilization (%)'
plot 'figure-heat-0.dat' using 1:2:(0.5):(0.5):($3) with boxxyerror fs solid 1.0 noborder lc palette, \
     '' using 1:2:(strcol(7) eq 'ok' ? NaN : 0.5):(0.5) with boxxyerror fs solid 1.0 noborder lc rgb '#bdbdbd', \
     '' using 1:2:4 with labels font ',7'
set title 'Width FLAP 20% - NVIDIA H200'
unset logscale x
set xlabel 'batch size'
set ylabel 'output length'
set xtics ('1' 0, '2' 1, '4' 2, '8' 3, '16' 4, '32' 5, '64' 6, '128' 7, '256' 8, '384' 9, '512' 10)
set ytics ('16' 0, '32' 1, '64' 2, '128' 3, '256' 4, '512' 5, '1024' 6)
set xrange [-0.5:10.5]
set yrange [-0.5:6.5]
unset key
set cbrange [0:100]
set cblabel 'GPU utilization (%)'
plot 'figure-heat-1.dat' using 1:2:(0.5):(0.5):($3) with boxxyerror fs solid 1.0 noborder lc palette, \
     '' using 1:2:(strcol(7) eq 'ok' ? NaN : 0.5):(0.5) with boxxyerror fs solid 1.0 noborder lc rgb '#bdbdbd', \
     '' using 1:2:4 with labels font ',7'
set title 'Depth BI 20% - NVIDIA H200'
unset logscale x
set xlabel 'batch size'
set ylabel 'output length'
set xtics ('1' 0, '2' 1, '4' 2, '8' 3, '16' 4, '32' 5, '64' 6, '128' 7, '256' 8, '384' 9, '512' 10)
set ytics ('16' 0, '32' 1, '64' 2, '128' 3, '256' 4, '512' 5, '1024' 6)
set xrange [-0.5:10.5]
set yrange [-0.5:6.5]
unset key
set cbrange [0:100]
set cblabel 'GPU utilization (%)'
plot 'figure-heat-2.dat' using 1:2:(0.5):(0.5):($3) with boxxyerror fs solid 1.0 noborder lc palette, \
     '' using 1:2:(strcol(7) eq 'ok' ? NaN : 0.5):(0.5) with boxxyerror fs solid 1.0 noborder lc rgb '#bdbdbd', \
     '' using 1:2:4 with labels font ',7'
set title 'Latency vs batch, L = 128'
set logscale x 2
set xlabel 'batch size'
set ylabel 'latency of the whole generation (s)'
set xtics auto
set ytics auto
set autoscale xy
set offsets graph 0, 0, 0.2, 0
set key top left
plot 'figure-lat-128-0.dat' index 0 using 1:2 with linespoints lw 2 pt 2 ps 1.2 lc rgb '#7f7f7f' title 'Original SmolLM2-135M', \
     'figure-lat-128-0.dat' index 1 using 1:2 with linespoints lw 2 dt 3 pt 2 ps 1.2 lc rgb '#7f7f7f' notitle, \
     'figure-lat-128-1.dat' index 0 using 1:2 with linespoints lw 2 pt 8 ps 1.2 lc rgb '#2ca02c' title 'Width FLAP 20%', \
     'figure-lat-128-1.dat' index 1 using 1:2 with linespoints lw 2 dt 3 pt 8 ps 1.2 lc rgb '#2ca02c' notitle, \
     'figure-lat-128-2.dat' index 0 using 1:2 with linespoints lw 2 pt 4 ps 1.2 lc rgb '#1f77b4' title 'Depth BI 20%', \
     'figure-lat-128-2.dat' index 1 using 1:2 with linespoints lw 2 dt 3 pt 4 ps 1.2 lc rgb '#1f77b4' notitle
set title 'Latency vs batch, L = 512'
set logscale x 2
set xlabel 'batch size'
set ylabel 'latency of the whole generation (s)'
set xtics auto
set ytics auto
set autoscale xy
set offsets graph 0, 0, 0.2, 0
set key top left
plot 'figure-lat-512-0.dat' index 0 using 1:2 with linespoints lw 2 pt 2 ps 1.2 lc rgb '#7f7f7f' title 'Original SmolLM2-135M', \
     'figure-lat-512-0.dat' index 1 using 1:2 with linespoints lw 2 dt 3 pt 2 ps 1.2 lc rgb '#7f7f7f' notitle, \
     'figure-lat-512-1.dat' index 0 using 1:2 with linespoints lw 2 pt 8 ps 1.2 lc rgb '#2ca02c' title 'Width FLAP 20%', \
     'figure-lat-512-1.dat' index 1 using 1:2 with linespoints lw 2 dt 3 pt 8 ps 1.2 lc rgb '#2ca02c' notitle, \
     'figure-lat-512-2.dat' index 0 using 1:2 with linespoints lw 2 pt 4 ps 1.2 lc rgb '#1f77b4' title 'Depth BI 20%', \
     'figure-lat-512-2.dat' index 1 using 1:2 with linespoints lw 2 dt 3 pt 4 ps 1.2 lc rgb '#1f77b4' notitle
unset multiplot
